"""The JSON API's OpenAPI document tells the truth: schemathesis generates requests from
it (valid ones and, in negative mode, ones the schema forbids) against the app in-process,
over a recorded store, with every one of its checks: no server error, every status code
and answer as documented, what the schema allows accepted and what it forbids refused."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from livingai.web import create_app
from tests.web_support import recorded_store

TOKEN = "schema-token"
load_all_checks()
EVERY_CHECK: list[Any] = CHECKS.get_all()  # not_a_server_error ... ignored_auth, all 14


# Collected from the app itself, so made at import: a store recorded into a temporary
# directory, removed when the tests end.
_HERE = Path(tempfile.mkdtemp(prefix="livingai-openapi-"))
atexit.register(shutil.rmtree, _HERE, ignore_errors=True)
APP = create_app(recorded_store(_HERE).url, allow_actions=True, token=TOKEN, live_seconds=0.2)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=EVERY_CHECK)


def test_the_schema_names_one_error_model_and_every_status() -> None:
    document = schema.raw_schema
    errors = {
        code: answer["content"]["application/json"]["schema"]["$ref"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for code, answer in operation["responses"].items()
        if code != "200"
    }
    assert set(errors.values()) == {"#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    replay = document["paths"]["/api/executions/{execution_id}/replay"]["post"]
    assert set(replay["responses"]) == {"200", "400", "401", "403", "404", "409", "422"}
