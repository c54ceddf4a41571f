"""`python -m services.analytics` (same as `estatedesk run analytics`)."""

from estatedesk.runner import run_service

if __name__ == "__main__":
    run_service("analytics")
