#!/usr/bin/env bash
# The risk service's deploy steps that need no cloud. cd.yml runs them between its cloud calls
# (ECR, EKS, port-forward); tests/test_cd_steps.py runs them here, the smoke test against the
# rehearsed pod (make rehearse-serve), so the workflow's own logic is tested before a merge.
#
#   pin OVERLAY_DIR IMAGE_REPO DIGEST [MODEL_VERSION]
#       pins the overlay's image to IMAGE_REPO@DIGEST (kustomize edit set image), records the
#       registry model version the Bento holds (when given: a re-run that finds the image built
#       knows no version) as the annotation pdm-platform/model-version on every object, renders
#       the overlay and checks that it deploys the pinned image and records the version
#   smoke BASE_URL EXAMPLE_JSON
#       waits for /readyz (SMOKE_TRIES x 2 s, default 30), POSTs the example to /predict (with
#       SMOKE_TOKEN as its bearer token when set: overlays with external access check tokens)
#       and checks the answer (probability in [0, 1], a known risk level, a model version)
#   rollback-decision APPLY_OUTCOME
#       prints "rollback" when the failed job had reached the apply step (its outcome success
#       or failure: something may have changed in the cluster), else "none"
#
# Environment: KUSTOMIZE (default kustomize).
set -euo pipefail

die() { echo "bento-steps: $*" >&2; exit 2; }

pin() {
    local dir="$1" repo="$2" digest="$3" version="${4:-}" kustomize="${KUSTOMIZE:-kustomize}"
    [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "not an image digest: $digest"
    [ -z "$version" ] || [[ "$version" =~ ^[0-9]+$ ]] || die "not a registry model version: $version"
    [ -f "$dir/kustomization.yaml" ] || die "no kustomization.yaml in $dir"
    (
        cd "$dir"
        "$kustomize" edit set image "pdm-risk-service=$repo@$digest"
        if [ -n "$version" ]; then
            "$kustomize" edit add annotation --force "pdm-platform/model-version:$version"
        fi
        rendered="$("$kustomize" build .)"
        grep -qF "image: $repo@$digest" <<<"$rendered" || die "the overlay does not deploy $repo@$digest"
        if [ -n "$version" ] && ! grep -qF "pdm-platform/model-version: \"$version\"" <<<"$rendered"; then
            die "the overlay does not record model version $version"
        fi
    )
    echo "pinned $dir to $repo@$digest${version:+ (model version $version)}"
}

smoke() {
    local url="${1%/}" example="$2" tries="${SMOKE_TRIES:-30}" answer
    [ -f "$example" ] || die "no example request $example"
    for _ in $(seq "$tries"); do
        curl --fail --silent --max-time 5 "$url/readyz" >/dev/null && break
        sleep 2
    done
    curl --fail --silent --show-error --max-time 10 "$url/readyz" >/dev/null
    local auth=()
    if [ -n "${SMOKE_TOKEN:-}" ]; then auth=(-H "authorization: Bearer $SMOKE_TOKEN"); fi
    answer="$(curl --fail --silent --show-error --max-time 30 -X POST "$url/predict" \
        -H 'content-type: application/json' "${auth[@]}" --data-binary "@$example")"
    python3 -c '
import json
import sys

answer = json.loads(sys.argv[1])
probability = answer["failure_probability"]
assert 0.0 <= probability <= 1.0, f"failure_probability {probability} outside [0, 1]"
assert answer["risk_level"] in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}, answer["risk_level"]
name, version, level = answer["model_name"], answer["model_version"], answer["risk_level"]
assert str(version).strip(), "no model version in the answer"
print(f"smoke test passed: model {name} v{version}, p={probability:.3f} {level}")
' "$answer"
}

rollback_decision() {
    case "${1:-}" in
        success | failure) echo rollback ;;
        *) echo none ;;
    esac
}

command="${1:-}"
shift || true
case "$command" in
    pin) [ "$#" -eq 3 ] || [ "$#" -eq 4 ] || die "usage: pin OVERLAY_DIR IMAGE_REPO DIGEST [MODEL_VERSION]"; pin "$@" ;;
    smoke) [ "$#" -eq 2 ] || die "usage: smoke BASE_URL EXAMPLE_JSON"; smoke "$@" ;;
    rollback-decision) [ "$#" -le 1 ] || die "usage: rollback-decision APPLY_OUTCOME"; rollback_decision "$@" ;;
    *) die "usage: $0 pin|smoke|rollback-decision ..." ;;
esac
