"""`python -m services.dispatch` (same as `estatedesk run dispatch`)."""

from estatedesk.runner import run_service

if __name__ == "__main__":
    run_service("dispatch")
