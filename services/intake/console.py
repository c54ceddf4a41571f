"""Read routes the staff console needs beside the request API (issue 16).

`GET /estates`: the estates a signed-in staff member may act for, with their names and time
zones. Estate staff get the estates that list them; head-office staff (token estates "*")
get every estate of the directory, so their console can offer an estate to work in.

`GET /clock`: the services' clock, so countdowns on screen follow the server's time (which
tests move), not the browser's.
"""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel, Field

from services.intake.app import service
from shared.auth import Principal
from shared.service import LocalTime, principal


class EstateBriefOut(BaseModel):
    code: str
    name: str
    timezone: str


@service.http.get("/estates", response_model=list[EstateBriefOut], tags=["directory"])
async def my_estates(who: Principal = Depends(principal)) -> list[EstateBriefOut]:
    """The estates the caller may act for, by code: [{code, name, timezone}] (IANA zone)."""
    directory = service.directory
    return [EstateBriefOut(code=code, name=estate.name, timezone=directory.policy_for(code).timezone)
            for code, estate in sorted(directory.estates.items()) if who.may_act_for(code)]


class ClockOut(BaseModel):
    now: LocalTime = Field(description="The services' clock (moved in tests), in the company's zone")


@service.http.get("/clock", response_model=ClockOut, tags=["directory"])
async def server_clock(who: Principal = Depends(principal)) -> ClockOut:
    """The services' current time: the console counts down against it, never the browser's."""
    return ClockOut(now=service.clock.now())
