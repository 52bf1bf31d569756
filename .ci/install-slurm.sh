#!/usr/bin/env bash
# Install the Debian packages the SLURM tests need (tests/test_slurm.py): slurm-wlm and munge.
# Idempotent and quiet: does nothing when the binaries are already there. Needs root and apt-get;
# exits non-zero with the reason when it cannot install them, so CI fails loudly instead of
# skipping the cluster tests.
set -euo pipefail

need=(slurmctld slurmd munged sbatch squeue scontrol scancel sinfo)
missing=()
for bin in "${need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

fail() { echo ".ci/install-slurm.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "cannot install slurm-wlm/munge (missing: ${missing[*]}): not root"
command -v apt-get >/dev/null 2>&1 || fail "cannot install slurm-wlm/munge (missing: ${missing[*]}): no apt-get"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo ".ci/install-slurm.sh: installing slurm-wlm and munge (missing: ${missing[*]})"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "apt-get install slurm-wlm munge failed (log above)"
fi
for bin in "${need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || fail "installed slurm-wlm but $bin is still missing"
done
echo ".ci/install-slurm.sh: $(/usr/sbin/slurmctld -V) installed"
