"""Read routes the staff console needs beside the request API (issue 16).

`GET /clock`: the services' clock, so countdowns on screen follow the server's time (which
tests move), not the browser's.
"""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel, Field

from services.intake.app import service
from shared.auth import Principal
from shared.service import LocalTime, principal


class ClockOut(BaseModel):
    now: LocalTime = Field(description="The services' clock (moved in tests), in the company's zone")


@service.http.get("/clock", response_model=ClockOut, tags=["directory"])
async def server_clock(who: Principal = Depends(principal)) -> ClockOut:
    """The services' current time: the console counts down against it, never the browser's."""
    return ClockOut(now=service.clock.now())
