"""``python -m dcf.run``: :func:`dcf.run.cli.entry` (:func:`~dcf.run.cli.main` and its exit status)."""

from .cli import entry

if __name__ == "__main__":
    entry()
