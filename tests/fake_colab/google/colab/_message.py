class MessageError(RuntimeError):
    """What Colab raises when a request to the browser fails (e.g. the user declines Drive access)."""
