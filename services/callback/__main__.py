"""`python -m services.callback` (same as `estatedesk run callback`)."""

from estatedesk.runner import run_service

if __name__ == "__main__":
    run_service("callback")
