"""`python -m services.archive` (same as `estatedesk run archive`)."""

from estatedesk.runner import run_service

if __name__ == "__main__":
    run_service("archive")
