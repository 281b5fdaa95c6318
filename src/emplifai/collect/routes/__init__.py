"""The web app's routes, one router per resource; ``router`` includes them all.

Pages are server-rendered Japanese HTML with plain forms (no JavaScript). Messages after a redirect are codes
looked up in ``common.MESSAGES``, never text taken from the URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from emplifai.collect.deps import url_guard
from emplifai.collect.routes import admin, auth, dashboards, lead, people, review, synthetic, work

router = APIRouter(dependencies=[Depends(url_guard)])
for module in (auth, people, work, review, synthetic, lead, dashboards, admin):
    router.include_router(module.router)
