"""Cloud Tasks target (queue `impact`): one slice of an impact dry run's pages.

Not public: in production Cloud Run admits only the task's OIDC identity. Each page commits
its rows with the job's cursor; a 503 (Firestore or Cloud Tasks down) makes Cloud Tasks retry,
and the retry goes on from the cursor. See common/services/impact.py.
"""

import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from common import wiring
from common.entry import require_method
from common.http import endpoint, json_response, parse_json


class RunImpactJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")


@functions_framework.http
@endpoint
def run_impact_job(request):
    require_method(request, "POST")
    body = parse_json(request, RunImpactJob)
    return json_response(wiring.impact_jobs().run(body.job_id, wiring.now()))
