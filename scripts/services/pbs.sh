#!/usr/bin/env bash
# PBS/Torque-syntax qsub, qstat and qdel for the wflp-pbs tests: there is no PBS server
# package for Debian, so these are Slurm's Torque wrappers (Debian's slurm-wlm-torque,
# perl) unpacked into a private prefix, driving the Slurm of scripts/services/slurm.sh.
# Not installed system-wide: the package conflicts with gridengine-client (both ship
# /usr/bin/qsub); put the prefix first in PATH, e.g. a system's
# command_prefix = ["env", "PATH=/opt/wflp-pbs/usr/bin:/usr/bin:/bin"].
#
#   bash scripts/services/pbs.sh install   # apt: the wrappers' perl modules (if missing);
#                                          # apt-get download: the wrappers, unpacked
#   bash scripts/services/pbs.sh start     # starts Slurm if it is not up; checks qstat
#   bash scripts/services/pbs.sh status    # exit 0 when qstat answers
#   bash scripts/services/pbs.sh stop      # stops Slurm only if start started it
#
# Environment: WFLP_PBS_PREFIX (default /opt/wflp-pbs); for start, what slurm.sh reads.
set -euo pipefail
PREFIX="${WFLP_PBS_PREFIX:-/opt/wflp-pbs}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
D="${WFLP_SLURM_DIR:-/tmp/wflp-slurm}"
PACKAGES=(libslurm-perl libslurmdb-perl libswitch-perl)

install() {
    if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}"
    fi
    local tmp
    tmp="$(mktemp -d)"
    chmod 755 "${tmp}"   # apt-get download works as user _apt
    chown _apt "${tmp}" 2>/dev/null || true
    (cd "${tmp}" && apt-get download -qq slurm-wlm-torque && mkdir -p "${PREFIX}" \
        && dpkg -x slurm-wlm-torque_*.deb "${PREFIX}")
    rm -rf "${tmp}"
    # qsub runs ${FindBin::Bin}/sbatch (and salloc, srun): the real ones go beside it
    local b
    for b in sbatch salloc srun; do
        ln -sf "$(command -v "${b}" || echo "/usr/bin/${b}")" "${PREFIX}/usr/bin/${b}"
    done
    echo "PBS-syntax commands in ${PREFIX}/usr/bin: $(cd "${PREFIX}/usr/bin" && echo q*)"
}

status() {
    PATH="${PREFIX}/usr/bin:${PATH}" qstat >/dev/null 2>&1 || [[ $? == 153 ]]
}

start() {
    if [[ ! -x "${PREFIX}/usr/bin/qsub" ]]; then
        echo "the PBS-syntax commands are not in ${PREFIX}; run: bash $0 install" >&2
        exit 1
    fi
    if ! bash "${HERE}/slurm.sh" status >/dev/null 2>&1; then
        echo "Slurm is not up: starting it (scripts/services/slurm.sh)"
        bash "${HERE}/slurm.sh" start
        mkdir -p "${D}"
        touch "${D}/started-by-pbs"
    fi
    # an empty listing exits 153 ("nothing found"), which is fine
    if ! status; then
        echo "${PREFIX}/usr/bin/qstat does not answer:" >&2
        PATH="${PREFIX}/usr/bin:${PATH}" qstat >&2 || true
        exit 1
    fi
    echo "PBS-syntax commands over Slurm: PATH=${PREFIX}/usr/bin:\$PATH qsub|qstat|qdel"
}

stop() {
    if [[ -f "${D}/started-by-pbs" ]]; then
        bash "${HERE}/slurm.sh" stop
        rm -f "${D}/started-by-pbs"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
