#!/usr/bin/env bash
# Installs a single-node SLURM (slurmctld, slurmd, client tools) and munge from the Debian archive
# for tests/test_slurm.py, which configures and starts the daemons itself. Quiet and idempotent;
# never fails CI: where apt cannot install them, the SLURM test skips and says why.
set -uo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null
then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-slurm: not root or no apt-get; the SLURM test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101: the packages' postinst scripts must not start daemons (the test does).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
fi
log=/tmp/install-slurm.log
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
  >"$log" 2>&1; then
  echo "install-slurm: apt-get failed, the SLURM test will skip; the tail of $log:" >&2
  tail -n 20 "$log" >&2
fi
if [ "$added_policy" -eq 1 ]; then rm -f "$policy"; fi
exit 0
