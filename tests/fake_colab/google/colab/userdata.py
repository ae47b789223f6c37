"""Stand-in for google.colab.userdata: the Colab secrets of $FAKE_SECRETS, name -> [value, access]."""

import json
import os


class NotebookAccessError(Exception):
    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


class SecretNotFoundError(Exception):
    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


def get(key):
    secrets = json.loads(os.environ.get("FAKE_SECRETS", "{}"))
    if key not in secrets:
        raise SecretNotFoundError(key)
    value, access = secrets[key]
    if not access:
        raise NotebookAccessError(key)
    return value
