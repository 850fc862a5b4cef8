#!/usr/bin/env bash
# `make test-compat`: the REST server's tests against each supported release line of the official
# pinecone SDK, one virtualenv per line (.venv-compat-LABEL), each with this project installed
# (editable) plus that SDK and pytest. Venvs are reused while pyproject.toml and the SDK spec
# are unchanged; pip's cache makes a fresh one quick. COMPAT_SDKS selects lines (default below);
# COMPAT_TESTS the test files.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
SDKS=${COMPAT_SDKS:-"7.3.0 9 10"}
TESTS=${COMPAT_TESTS:-"tests/test_server.py tests/test_server_jobs.py"}

spec_for() {
    case "$1" in
        9) echo "pinecone>=9,<10" ;;      # the latest 9.x
        10) echo "pinecone>=10,<11" ;;    # the latest 10.x
        *) echo "pinecone==$1" ;;
    esac
}

setup() {
    local label=$1 venv=".venv-compat-$1" spec want
    spec=$(spec_for "$label")
    want="$spec $(sha256sum pyproject.toml | cut -c1-16)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.compat-stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e . "$spec" "pytest>=8"
    echo "$want" > "$venv/.compat-stamp"
}

start=$(date +%s)
# build the venvs side by side (pip mostly waits on I/O), then test one after the other
pids=()
for label in $SDKS; do
    setup "$label" > ".compat-setup-$label.log" 2>&1 &
    pids+=($!)
done
i=0
for label in $SDKS; do
    if ! wait "${pids[$i]}"; then
        echo "test-compat: setting up .venv-compat-$label failed:" >&2
        cat ".compat-setup-$label.log" >&2
        exit 1
    fi
    rm -f ".compat-setup-$label.log"
    i=$((i + 1))
done
echo "test-compat: venvs ready in $(( $(date +%s) - start ))s"

failed=()
summary=()
for label in $SDKS; do
    venv=".venv-compat-$label"
    version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('pinecone'))")
    echo "=== pinecone $version ($venv) ==="
    # shellcheck disable=SC2086
    if "$venv/bin/python" -m pytest -q -p no:cacheprovider $TESTS; then
        summary+=("pinecone $version: passed")
    else
        summary+=("pinecone $version: FAILED")
        failed+=("$version")
    fi
done
echo "=== test-compat summary ($(( $(date +%s) - start ))s) ==="
printf '  %s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
