"""`python -m services.intake` (same as `estatedesk run intake`)."""

from estatedesk.runner import run_service

if __name__ == "__main__":
    run_service("intake")
