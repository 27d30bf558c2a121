"""Cloud Tasks target (queue `impact`, tasks named replan-...): one slice of a re-plan.

Not public: in production Cloud Run admits only the task's OIDC identity. Each case's offer is
written once (its id is the job's and the series'); the cursor moves after each page; a 503
makes Cloud Tasks retry, and the retry goes on from the cursor. common/services/replan.py.
"""

import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from common import wiring
from common.entry import require_method
from common.http import endpoint, json_response, parse_json


class RunReplanJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")


@functions_framework.http
@endpoint
def run_replan_job(request):
    require_method(request, "POST")
    body = parse_json(request, RunReplanJob)
    return json_response(wiring.replan_jobs().run(body.job_id, wiring.now()))
