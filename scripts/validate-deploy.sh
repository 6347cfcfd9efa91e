#!/usr/bin/env bash
# Validates the deployment files without a container engine or a cluster:
#   docker-compose.yml          `docker-compose config` (Debian's docker-compose)
#   deploy/kubernetes/**.yaml   kubernetes-validate (PyPI), CRDs (KEDA) checked for shape
#   deploy/grafana, prometheus  JSON/YAML parse; every pulse_* series they use exists
#   deploy/Dockerfile           its build command (static Swift runtime, release) runs
#                               here, and the binary needs only what the runtime image has
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf 'validate-deploy: %s\n' "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v docker-compose >/dev/null; then
  log "installing docker-compose"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
venv="$root/.tools/deploy-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  log "installing kubernetes-validate"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.31.0 pyyaml
fi

log "docker-compose.yml"
docker-compose -f docker-compose.yml config -q

log "deploy/kubernetes"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 deploy/kubernetes/*.yaml deploy/kubernetes/alternatives/*.yaml
# kubernetes-validate has no schema for KEDA's and kustomize's kinds: check their shape.
"$venv/bin/python" - <<'PY'
import glob, sys, yaml
failed = False
for path in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
    for document in (d for d in yaml.safe_load_all(open(path)) if d):
        kind, spec = document.get("kind"), document.get("spec", {})
        if kind == "ScaledObject":
            ok = bool(spec.get("scaleTargetRef", {}).get("name") and spec.get("triggers"))
        elif kind == "TriggerAuthentication":
            ok = bool(spec.get("secretTargetRef"))
        elif kind == "Kustomization":
            ok = all(glob.glob(f"deploy/kubernetes/{r}") for r in document.get("resources", []))
        else:
            continue
        print(f"{path}: {kind} {'ok' if ok else 'INVALID'}")
        failed |= not ok
sys.exit(1 if failed else 0)
PY

log "deploy/grafana, deploy/prometheus: every series exists in the code"
python3 - <<'PY'
import glob, json, re, sys
sources = "".join(open(p).read() for p in glob.glob("Sources/**/*.swift", recursive=True))
texts = [open(p).read() for p in glob.glob("deploy/prometheus/*.yml")]
for path in glob.glob("deploy/grafana/dashboards/*.json"):
    dashboard = json.load(open(path))
    texts += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
missing = set()
for name in set(re.findall(r"\bpulse_[a-z_]+", "\n".join(texts))):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if f'"{base}"' not in sources:
        missing.add(name)
if missing:
    sys.exit(f"series used in deploy/ but not exported: {sorted(missing)}")
print("series ok")
PY

log "deploy/Dockerfile: swift build -c release --product pulse --static-swift-stdlib"
swift build -c release --product pulse --static-swift-stdlib 2>&1 | tail -1
binary="$(swift build -c release --show-bin-path)/pulse"
if ldd "$binary" | grep -E "libswift|libFoundation|libdispatch|not found"; then
  log "the release binary needs libraries the runtime image does not have"; exit 1
fi
"$binary" config reference >/dev/null
log "ok"
