"""scripts/kind-up.sh (make kind-up) and scripts/kind-spark-sql.sh (make spark-sql) run against fake
docker / kind / kubectl / helm executables that record their arguments: the order of the steps, the
pinned chart versions and override files, idempotency on a second run, the tool check, and the pod
spec of the Spark SQL shell. (kind cannot run here; this is the next best thing to running it.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.manifests.chart import KUBE_VERSION, REPO, helm_bin

FAKE = r"""#!/usr/bin/env bash
# fake {tool}: record the call, answer what the scripts ask
echo "{tool} $*" >> "$FAKE_LOG"
args=" $* "
case "$args" in *" -f - "*) cat >> "$FAKE_APPLIED" ;; esac  # like kubectl apply -f -: read the manifest
case "{tool}" in
  docker)
    case "$args" in *" info "*"MemTotal"*) echo "${{FAKE_DOCKER_MEM:-17179869184}} ${{FAKE_DOCKER_CPUS:-8}}";; esac ;;
  kind)
    case "$args" in
      *" get clusters "*) cat "$FAKE_STATE" 2>/dev/null || true ;;
      *" create cluster "*) echo marketing-engine >> "$FAKE_STATE"
        prev=""; for a in "$@"; do [ "$prev" = --config ] && cp "$a" "$FAKE_KIND_CONFIG"; prev="$a"; done ;;
    esac ;;
  helm)
    case "$args" in
      " template "*) exec "$REAL_HELM" "$@" ;;  # rendering needs no cluster: the pinned Helm does it
      " test "*) if [ -n "${{FAKE_VERIFY_FAIL:-}}" ]; then echo "$FAKE_VERIFY_FAIL"; exit 1; fi
        echo "PASS 7/7" ;;
      *" --install ${{FAKE_HELM_FAIL:-no-such-release}} "*)
        echo "Error: UPGRADE FAILED: post-upgrade hooks failed: timed out waiting for the condition" >&2; exit 1 ;;
    esac ;;
  getenforce) echo "${{FAKE_SELINUX:-Disabled}}" ;;
  ss)  # ss -Hltnp 'sport = :PORT'
    case "$args" in *":${{FAKE_BUSY_PORT:-no-such-port}} "*)
      echo 'LISTEN 0 128 *:'"$FAKE_BUSY_PORT"' *:* users:(("ControlCenter",pid=4242,fd=9))' ;; esac ;;
  lsof)  # lsof -nP -iTCP:PORT -sTCP:LISTEN
    case "$args" in *"-iTCP:${{FAKE_BUSY_PORT:-no-such-port}} "*)
      echo "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME"
      echo "ControlCe 4242 me 9u IPv6 0x1 0t0 TCP *:$FAKE_BUSY_PORT (LISTEN)" ;; esac ;;
  kubectl)
    case "$args" in
      *"--dry-run=client"*) echo "apiVersion: v1"; echo "kind: Namespace" ;;
      *"${{FAKE_NOT_READY:-no-such-object}} -o jsonpath={{.status.readyReplicas}}"*) printf 0 ;;
      *" get sparkapplication "*" -o jsonpath={{.status.applicationState.state}} "*) printf '%s' "${{FAKE_APP_STATE:-COMPLETED}}" ;;
      *" -o jsonpath={{.spec.template}} "*) printf '{{"type": "Python", "arguments": ["--from-topic"]}}' ;;
      *" logs "*"-driver "*) printf 'Deleted 2 files\nerasure: customer c-1: deleted bronze/customer_profile 1\n' ;;
      *" get sparkapplication ${{FAKE_SPARK_FAILED:-no-such-app}} "*)
        printf 'SUBMISSION_FAILED|6|5|failed to run spark-submit: signal: killed' ;;
      *" get sparkapplication "*) printf 'RUNNING|1|5|' ;;
      *" get jobs "*"component=${{FAKE_FAILED_JOB:-no-such-job}}"*) printf 'marketing-engine-job-1  True\n' ;;
      *" get jobs "*) printf 'marketing-engine-job-1 1 \n' ;;
      *" get pods "*) [ -n "${{FAKE_PODS:-}}" ] && case "$args" in *" -n ${{FAKE_PODS_NS:-marketing-engine}} "*)
          printf '%b' "$FAKE_PODS" ;; esac; printf 'fine-pod Running True  \n' ;;
      *"jsonpath="*) printf 1 ;;
      *"--overrides="*) for a in "$@"; do case "$a" in --overrides=*) printf '%s' "${{a#--overrides=}}" > "$FAKE_OVERRIDES";; esac; done ;;
    esac ;;
esac
exit 0
"""


FAKED = ("docker", "kind", "kubectl", "helm", "ss", "lsof", "getenforce")
FAKE_DEFAULT = ("docker", "kind", "kubectl", "helm", "ss")


def fake_tools(tmp_path: Path, tools: tuple[str, ...] = FAKE_DEFAULT) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        path = bin_dir / tool
        path.write_text(FAKE.format(tool=tool))
        path.chmod(0o755)
    # The system tools, minus any real docker/kind/kubectl/helm: links to everything else on PATH.
    system = tmp_path / "system"
    if not system.exists():
        system.mkdir()
        for directory in os.environ["PATH"].split(os.pathsep):
            if not directory or not Path(directory).is_dir():
                continue
            for exe in Path(directory).iterdir():
                link = system / exe.name
                if exe.name in FAKED or link.exists() or link.is_symlink() or not os.access(exe, os.X_OK):
                    continue
                link.symlink_to(exe)
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(system)]),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "clusters"),
        "FAKE_OVERRIDES": str(tmp_path / "overrides.json"),
        "FAKE_KIND_CONFIG": str(tmp_path / "kind-config.used.yaml"),
        "FAKE_APPLIED": str(tmp_path / "applied.yaml"),
        "REAL_HELM": str(helm_bin()),
        "HELM": "helm",
        "KIND_UP_TIMEOUT": "5",
        "KIND_SEED_TIMEOUT": "5",
        "KIND_UP_PODS_TIMEOUT": "1",
    }


def run_kind_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("make", path=env["PATH"]) is None:
        pytest.fail("make is needed to run scripts/kind-up.sh")
    return subprocess.run(["make", "--no-print-directory", "kind-up", "HELM=helm"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def calls(env: dict[str, str]) -> list[str]:
    return Path(env["FAKE_LOG"]).read_text().splitlines()


def index(lines: list[str], needle: str) -> int:
    hits = [i for i, line in enumerate(lines) if needle in line]
    assert hits, f"no call contains {needle!r}:\n" + "\n".join(lines)
    return hits[0]


def image_tag(key: str) -> str:
    return subprocess.run(["scripts/image-tag.sh", key], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def test_kind_up_runs_every_step_in_order_and_again_idempotently(tmp_path):
    env = fake_tools(tmp_path)
    first = run_kind_up(env)
    assert first.returncode == 0, first.stdout + first.stderr
    log = calls(env)
    app, spark = image_tag("app"), image_tag("spark")
    order = [
        index(log, "kind create cluster --name marketing-engine --config kind-config.yaml"),
        index(log, f"docker build -f images/app/Dockerfile -t marketing-engine/app:{app} ."),
        index(log, f"docker build -f images/spark/Dockerfile -t marketing-engine/spark:{spark} ."),
        index(log, f"kind load docker-image --name marketing-engine marketing-engine/app:{app} marketing-engine/spark:{spark}"),
        index(log, "kubectl --context kind-marketing-engine create namespace marketing-engine"),
        index(log, "helm upgrade --install redpanda redpanda/redpanda --version 26.2.2"),
        index(log, "helm upgrade --install spark-operator spark-operator/spark-operator --version 2.5.2"),
        index(log, "helm upgrade --install kafka-ui kafbat-ui/kafka-ui --version 1.5.2"),
        index(log, "get sts redpanda"),
        index(log, "helm upgrade --install marketing-engine charts/marketing-engine"),
        index(log, f"helm template marketing-engine charts/marketing-engine -n marketing-engine --set pipeline.enabled=true --set managedBy=kubectl --set images.spark.tag={spark} "),
        index(log, "get sparkapplication marketing-engine-score"),
        index(log, "helm test marketing-engine --kube-context kind-marketing-engine -n marketing-engine --logs"),
    ]
    assert order == sorted(order), "steps out of order:\n" + "\n".join(log)
    # `helm template | kubectl apply -f -`: the two ends of one pipe log their calls in either order.
    applied = index(log, "kubectl --context kind-marketing-engine -n marketing-engine apply -f -")
    assert index(log, "helm upgrade --install marketing-engine charts/marketing-engine") < applied < order[-1]
    for values in ("redpanda", "spark-operator", "kafka-ui"):
        assert f"-f charts/values/{values}.yaml" in log[index(log, f"--install {values} ")]
    assert "-n spark-operator" in log[index(log, "--install spark-operator ")]
    # the namespace the Spark Operator watches exists before it is installed
    assert index(log, "create namespace marketing-engine") < index(log, "--install spark-operator ")
    out = first.stdout
    for component in ("redpanda", "spark-operator webhook", "kafka-ui", "topics", "ksqldb", "ksql-operator",
                      "web", "web-feeder", "spark bronze", "spark score", "seed"):
        ready = [line for line in out.splitlines() if line.strip().startswith(component + " ") and "ready in" in line]
        assert len(ready) == 1, f"one progress line for {component}:\n{out}"
    for url in ("http://localhost:30500", "http://localhost:8080", "localhost:31092", "http://localhost:30081",
                "http://localhost:30082"):
        assert url in out
    # second run: the cluster exists, nothing is created twice, everything else is an upgrade/apply
    Path(env["FAKE_LOG"]).write_text("")
    second = run_kind_up(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not any("create cluster" in line for line in calls(env))
    assert "exists" in second.stdout
    assert (REPO / "data" / "delta").is_dir()


def test_kind_up_reports_a_component_that_is_not_ready(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_NOT_READY": "marketing-engine-ksqldb", "KIND_UP_TIMEOUT": "1"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    lines = proc.stdout.splitlines()
    assert any(line.split() == ["ksqldb", "NOT", "ready", "after", line.split()[-1]] for line in lines), proc.stdout
    assert any(line.strip().startswith("web ") and "ready in" in line for line in lines)  # carries on with the rest
    assert "docs/kubernetes.md" in proc.stdout and "again is safe" in proc.stdout


HINT = "troubleshooting section"


def test_kind_up_checks_host_ports_before_creating_the_cluster(tmp_path):
    """Linux: ss sees every listening socket and, when allowed, the process."""
    env = {**fake_tools(tmp_path), "FAKE_BUSY_PORT": "30081"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert "host port 30081 is in use by ControlCenter (pid 4242)" in proc.stdout, proc.stdout
    assert not any("create cluster" in c for c in calls(env))
    # every mapped port was asked about, not only up to the busy one
    asked = [c for c in calls(env) if c.startswith("ss ")]
    assert {c.rsplit(":", 1)[1] for c in asked} == {"30500", "8080", "31092", "30081", "30082"}
    assert HINT in proc.stdout


def test_kind_up_names_the_port_holder_with_lsof_on_macos(tmp_path):
    env = {**fake_tools(tmp_path, tools=("docker", "kind", "kubectl", "helm", "lsof")), "FAKE_BUSY_PORT": "30500"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert "host port 30500 is in use by ControlCe (pid 4242)" in proc.stdout, proc.stdout
    assert not any("create cluster" in c for c in calls(env))


def test_port_holder_without_ss_or_lsof_probes_the_port(tmp_path):
    env = fake_tools(tmp_path, tools=())  # no ss, no lsof: the /dev/tcp probe
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = ["bash", "-c", f". scripts/kind-lib.sh; port_holder {port}"]
        assert subprocess.run(probe, cwd=REPO, env=env, timeout=30).returncode == 0
    assert subprocess.run(probe, cwd=REPO, env=env, timeout=30).returncode == 1


def test_a_cluster_that_exists_is_not_port_checked(tmp_path):
    env = fake_tools(tmp_path)
    Path(env["FAKE_STATE"]).write_text("marketing-engine\n")
    env["FAKE_BUSY_PORT"] = "30500"  # held by the cluster's own node container
    proc = run_kind_up(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_third_party_installs_have_a_timeout_and_a_progress_line(tmp_path):
    env = fake_tools(tmp_path)
    proc = run_kind_up(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for release in ("redpanda", "spark-operator", "kafka-ui"):
        assert "--timeout 15m" in calls(env)[index(calls(env), f"--install {release} ")]
        lines = proc.stdout.splitlines()
        # a line before Helm's silent wait, and one after it
        assert "installing (up to 15m" in lines[index(lines, f"  {release} ")]
        assert lines[index(lines, f"  {release} ") + 1].endswith(": installed")


def test_a_failed_install_ends_with_the_hint(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_HELM_FAIL": "redpanda"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert "hooks failed" in proc.stderr
    assert proc.stdout.rstrip().endswith("picks up where it stopped."), proc.stdout
    assert not any("--install spark-operator " in c for c in calls(env))


def test_a_platform_wait_that_times_out_ends_with_the_hint(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_NOT_READY": "redpanda", "KIND_UP_TIMEOUT": "1"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert any(line.split()[:3] == ["redpanda", "NOT", "ready"] for line in proc.stdout.splitlines()), proc.stdout
    assert proc.stdout.rstrip().endswith("picks up where it stopped."), proc.stdout


def test_a_failed_seed_job_is_not_waited_for(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_FAILED_JOB": "seed", "KIND_SEED_TIMEOUT": "900"}
    started = time.monotonic()
    proc = run_kind_up(env)
    assert time.monotonic() - started < 120  # not the 900 s of the seed's timeout
    assert proc.returncode != 0
    (line,) = [line for line in proc.stdout.splitlines() if line.strip().startswith("seed ")]
    assert "FAILED after" in line and "describe job/marketing-engine-job-1" in line and "logs job/" in line
    assert HINT in proc.stdout


def test_a_spark_application_whose_submissions_are_spent_is_not_waited_for(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_SPARK_FAILED": "marketing-engine-gold", "KIND_UP_TIMEOUT": "600"}
    started = time.monotonic()
    proc = run_kind_up(env)
    assert time.monotonic() - started < 120
    assert proc.returncode != 0
    (line,) = [line for line in proc.stdout.splitlines() if line.strip().startswith("spark gold ")]
    assert "SUBMISSION_FAILED" in line and "signal: killed" in line
    assert "describe sparkapplication marketing-engine-gold" in line and "make logs C=spark-gold" in line
    assert any(line.strip().startswith("spark score ") and "ready in" in line for line in proc.stdout.splitlines())


@pytest.mark.parametrize(("status", "expected"), [
    ("RUNNING|1|5|", 0),
    ("SUBMITTED|1|5|", 1),
    ("SUBMISSION_FAILED|2|5|webhook not ready", 1),  # the operator resubmits: keep waiting
    ("SUBMISSION_FAILED|6|5|webhook not ready", 2),  # retries spent
    ("FAILED|1|5|driver exited", 2),
])
def test_spark_app_running_tells_waiting_from_failed(tmp_path, status, expected):
    env = fake_tools(tmp_path, tools=())
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.write_text(f"#!/usr/bin/env bash\nprintf '%s' '{status}'\n")
    kubectl.chmod(0o755)
    proc = subprocess.run(["bash", "-c", ". scripts/kind-lib.sh; spark_app_running ns app"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == expected, proc.stdout


def test_a_pending_pod_fails_the_run_and_is_named(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_PODS": r"redpanda-0 Pending False  Unschedulable\n",
           "FAKE_PODS_NS": "redpanda"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert "redpanda/redpanda-0 Pending Unschedulable" in proc.stdout, proc.stdout
    assert "kubectl -n redpanda describe pod redpanda-0" in proc.stdout
    assert "fine-pod" not in proc.stdout
    assert HINT in proc.stdout


def test_a_running_pod_that_is_not_ready_fails_the_run(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_PODS": r"marketing-engine-web-1 Running False CrashLoopBackOff \n"}
    proc = run_kind_up(env)
    assert proc.returncode != 0
    assert "marketing-engine/marketing-engine-web-1 Running CrashLoopBackOff" in proc.stdout, proc.stdout


@pytest.mark.parametrize(("docker_gib", "cpus", "warned"), [
    (7, 3, "memory"),  # a "7 GiB" VM reports ~6.8 GiB: not enough for the 7,666 MiB of requests
    (8, 3, None),  # the documented minimum (DOCKER_MEMORY_GIB in mk/kind.mk, test_budget_memory)
    (16, 2, "cpu"),
    (16, 4, None),
])
def test_docker_resources_are_compared_with_what_docker_reports(tmp_path, docker_gib, cpus, warned):
    reported = int(docker_gib * 1024 * 0.97) * 1024 * 1024  # MemTotal: what the VM's kernel reports
    env = {**fake_tools(tmp_path), "FAKE_DOCKER_MEM": str(reported), "FAKE_DOCKER_CPUS": str(cpus)}
    proc = run_kind_up(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = proc.stdout.split("== 2/8")[0]
    assert ("Give Docker >= 8 GiB" in warnings) == (warned == "memory"), warnings
    assert ("Give Docker >= 3 CPUs" in warnings) == (warned == "cpu"), warnings


def test_kind_config_is_used_as_it_is_without_selinux(tmp_path):
    env = fake_tools(tmp_path, tools=(*FAKE_DEFAULT, "getenforce"))
    proc = run_kind_up(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--config kind-config.yaml " in calls(env)[index(calls(env), "create cluster")]
    assert Path(env["FAKE_KIND_CONFIG"]).read_text() == (REPO / "kind-config.yaml").read_text()


def test_selinux_enforcing_relabels_the_delta_mount(tmp_path):
    env = {**fake_tools(tmp_path, tools=(*FAKE_DEFAULT, "getenforce")), "FAKE_SELINUX": "Enforcing"}
    proc = run_kind_up(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SELinux is enforcing" in proc.stdout
    used = yaml.safe_load(Path(env["FAKE_KIND_CONFIG"]).read_text())
    original = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    (mount,) = used["nodes"][0]["extraMounts"]
    assert mount == {"hostPath": str(REPO / "data" / "delta"), "containerPath": "/var/lib/marketing-engine/delta",
                     "selinuxRelabel": True}
    used["nodes"][0].pop("extraMounts")
    original["nodes"][0].pop("extraMounts")
    assert used == original  # nothing else differs


def run_clean(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "kind-clean-delta"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_kind_clean_delta_removes_the_tables_from_a_container(tmp_path):
    env = fake_tools(tmp_path)
    (REPO / "data" / "delta").mkdir(parents=True, exist_ok=True)
    proc = run_clean(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = [c for c in calls(env) if c.startswith("docker run ")]
    assert "--rm --security-opt label=disable" in run
    assert f"-v {REPO / 'data' / 'delta'}:/delta busybox:1.37.0 " in run
    assert "rm -rf /delta/*" in run


def test_kind_clean_delta_refuses_while_the_cluster_runs(tmp_path):
    env = fake_tools(tmp_path)
    Path(env["FAKE_STATE"]).write_text("marketing-engine\n")
    proc = run_clean(env)
    assert proc.returncode != 0
    assert "make kind-down first" in proc.stderr
    assert not any(c.startswith("docker run ") for c in calls(env))


def test_kind_up_says_how_to_install_missing_tools(tmp_path):
    env = fake_tools(tmp_path, tools=("docker",))  # no kind, kubectl, helm
    proc = run_kind_up(env)
    assert proc.returncode != 0
    for tool, hint in (("kind", "go install sigs.k8s.io/kind@v0.32.0"), ("kubectl", "kubernetes.io/docs/tasks/tools"),
                       ("helm", "make helm-tool")):
        assert f"missing: {tool} -> " in proc.stdout and hint in proc.stdout, proc.stdout
    assert not Path(env["FAKE_LOG"]).exists() or not any("create" in c for c in calls(env))


def test_spark_sql_pod_is_restricted_and_valid(tmp_path):
    env = fake_tools(tmp_path)
    proc = subprocess.run([str(REPO / "scripts" / "kind-spark-sql.sh"), "-e", 'SELECT "a", `b` FROM gold_c360'],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    overrides = json.loads(Path(env["FAKE_OVERRIDES"]).read_text())
    pod = {"kind": "Pod", "metadata": {"name": "spark-sql", **overrides["metadata"]}, **{"apiVersion": "v1"},
           "spec": overrides["spec"]}
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    (container,) = pod["spec"]["containers"]
    tag = subprocess.run([str(REPO / "scripts" / "image-tag.sh"), "spark"], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60).stdout.strip()
    assert container["image"] == f"marketing-engine/spark:{tag}"  # the content tag make images loads
    assert container["args"][-2:] == ["-e", 'SELECT "a", `b` FROM gold_c360']
    assert pod["spec"]["securityContext"]["runAsUser"] == 185
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "DELTA_ROOT", "value": "/data/delta"} in container["env"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "marketing-engine-delta"


def test_kind_up_ends_with_make_verify_and_fails_when_a_hop_fails(tmp_path):
    env = {**fake_tools(tmp_path), "FAKE_VERIFY_FAIL": "FAIL 5/7: first failed hop gold (not seen within 300 s)"}
    run = run_kind_up(env)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "FAIL 5/7: first failed hop gold" in run.stdout
    assert "run 'make verify' again in a few minutes" in run.stdout  # the seed's backlog may still be in flight
    assert "Some components were not ready in time or failed" in run.stdout
    log = calls(env)
    assert index(log, "get pods") < index(log, "helm test marketing-engine")
    (tmp_path / "skip").mkdir()
    skip_env = {**fake_tools(tmp_path / "skip"), "KIND_VERIFY": "0"}
    skipped = run_kind_up(skip_env)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert not [c for c in calls(skip_env) if "helm test" in c]


def test_make_verify_is_the_charts_helm_test_with_its_log(tmp_path):
    env = fake_tools(tmp_path)
    run = subprocess.run(["make", "--no-print-directory", "verify", "HELM=helm"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "PASS 7/7" in run.stdout, run.stdout + run.stderr
    (call,) = [c for c in calls(env) if c.startswith("helm ")]
    assert call.startswith("helm test marketing-engine --kube-context kind-marketing-engine -n marketing-engine --logs")
    failing = subprocess.run(["make", "--no-print-directory", "verify", "HELM=helm"], cwd=REPO,
                             env={**env, "FAKE_VERIFY_FAIL": "FAIL 6/7: first failed hop score"},
                             capture_output=True, text=True, timeout=120)
    assert failing.returncode != 0 and "first failed hop score" in failing.stdout


def test_make_forget_requests_runs_the_scheduled_erasure_now_and_checks(tmp_path):
    """make forget CUSTOMER=<id> against fake tools: the request from the web UI's pod, then a SparkApplication
    made from the ScheduledSparkApplication's template, waited for, its report lines, then forget.check;
    without CUSTOMER one usage line; a FAILED run fails the target."""
    env = fake_tools(tmp_path)
    run = subprocess.run(["make", "--no-print-directory", "forget", "CUSTOMER=c-1"], cwd=REPO,
                         env={**env, "FORGET_WAIT_S": "5"}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "erasure: customer c-1: deleted bronze/customer_profile 1" in run.stdout
    assert "Deleted 2 files" not in run.stdout  # Delta's VACUUM chatter is not the report
    lines = calls(env)
    request = index(lines, "exec deploy/marketing-engine-web -c web -- env FORGET_REQUESTED_BY=make forget "
                           "python -m forget c-1")
    create = index(lines, "create -f -")
    check = index(lines, "python -m forget.check c-1")
    assert request < create < check
    created = json.loads(Path(env["FAKE_APPLIED"]).read_text())
    assert created["kind"] == "SparkApplication" and created["spec"] == {"type": "Python", "arguments": ["--from-topic"]}
    assert created["metadata"]["name"].startswith("marketing-engine-erasure-now-")
    assert created["metadata"]["namespace"] == "marketing-engine"

    usage = subprocess.run(["make", "--no-print-directory", "forget"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode != 0 and "usage: make forget CUSTOMER=<customer id>" in usage.stderr
    failed = subprocess.run(["make", "--no-print-directory", "forget", "CUSTOMER=c-1"], cwd=REPO,
                            env={**env, "FAKE_APP_STATE": "FAILED", "FORGET_WAIT_S": "5"}, capture_output=True,
                            text=True, timeout=120)
    assert failed.returncode != 0 and "FAILED" in failed.stdout
