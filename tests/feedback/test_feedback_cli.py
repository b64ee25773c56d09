"""``agentwatch label``, ``dataset add|list|export`` and ``calibrate`` on a store that saw traffic."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from feedback_helpers import CONFIG
from feedback_helpers import refund_messages as refund
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.cli import main
from agentwatch.testing import configured_pipeline
from agentwatch.traffic.importer import conversation_request


def test_label_dataset_and_calibrate_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agentwatch.db'}"
    pipeline = configured_pipeline(url, tmp_path, CONFIG)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        for i, (total, amount) in enumerate([(10.0, 20.0), (10.0, 5.0), (30.0, 31.0)]):
            body = conversation_request(f"c{i}", refund(f"O{i}", total, amount), 1_767_225_600 * 10**9 + i * 10**11)
            client.post("/v1/traces", content=body.SerializeToString(),
                        headers={"content-type": "application/x-protobuf"})
        client.post("/api/v1/admin/flush")
    pipeline.store.close()
    runner = CliRunner()
    common = ["--config", str(tmp_path / "agentwatch.yaml"), "--database-url", url]

    labelled = runner.invoke(main, ["label", "c0", "--evaluator", "refund_limit", "--verdict", "real_failure",
                                    "--author", "ana", *common], catch_exceptions=False)
    assert labelled.exit_code == 0, labelled.output
    assert json.loads(labelled.output)["calibration"]["n"] == 1
    for session, verdict in (("c1", "correct"), ("c2", "false_positive")):
        assert runner.invoke(main, ["label", session, "--evaluator", "refund_limit", "--verdict", verdict,
                                    *common]).exit_code == 0
    added = runner.invoke(main, ["dataset", "add", "refunds", "--session", "c0", "--session", "c1",
                                 "--session", "c2", *common], catch_exceptions=False)
    assert added.exit_code == 0 and "made version 1 (3 cases" in added.output
    listed = runner.invoke(main, ["dataset", "list", *common])
    assert "refunds\tversion 1\t3 cases" in listed.output
    run = runner.invoke(main, ["calibrate", "--evaluator", "refund_limit", "--dataset", "refunds", *common],
                        catch_exceptions=False)
    assert run.exit_code == 0, run.output
    metrics = json.loads(run.output)["metrics"]
    assert metrics["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 0}
    exported = tmp_path / "refunds.jsonl"
    assert runner.invoke(main, ["dataset", "export", "refunds@1", "-o", str(exported), *common]).exit_code == 0
    assert json.loads(exported.read_text().splitlines()[0])["case_count"] == 3
    again = runner.invoke(main, ["dataset", "add", "copy", "--file", str(exported), *common])
    assert again.exit_code == 0 and "copy: made version 1 (3 cases" in again.output
    missing = runner.invoke(main, ["calibrate", "--evaluator", "refund_limit", "--dataset", "nope", *common])
    assert missing.exit_code != 0 and "dataset 'nope' not found" in missing.output
    wrong = runner.invoke(main, ["gate", "--dataset", str(exported), "--candidate", str(exported), *common])
    assert wrong.exit_code == 1 and "result: FAILED" in wrong.output  # the recorded sessions fail again
