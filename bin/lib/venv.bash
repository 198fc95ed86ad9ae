# shellcheck shell=bash
# Sourced by bin/test and bin/demo, which share .venv: both install imagesync into it the same way (editable, so
# `demo --glance` finds tests/devcloud and the tests run the checkout's code), and neither rewrites it when it is
# already up to date: pip rewriting .venv under a running test suite (bin/test's workers run bin/demo) breaks imports.

# ensure_venv [EXTRAS]: .venv holds this checkout's imagesync, editable, with EXTRAS (e.g. "test") or more.
ensure_venv() {
    local extras="${1:-}" stamp=.venv/imagesync-installed key
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    # Up to date: installed from this checkout and this pyproject.toml (dependencies, entry points) with the extras.
    key="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
    if [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$key" ] && { [ -z "$extras" ] || grep -qxF "$extras" "$stamp"; }
    then
        return 0
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    printf '%s\n%s\n' "$key" "$extras" >"$stamp"
}
