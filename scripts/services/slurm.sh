#!/usr/bin/env bash
# A real single-node Slurm on 127.0.0.1 for the wflp-slurm (and wflp-pbs) tests: slurmctld,
# slurmd and munge, and with WITH_DBD=1 slurmdbd + MariaDB so that sacct works. Root, no
# systemd, no cgroups (Debian 12, Slurm 22.05).
#
#   bash scripts/services/slurm.sh install   # apt-get install the packages (WITH_DBD=1: + dbd)
#   WITH_DBD=1 bash scripts/services/slurm.sh start
#   bash scripts/services/slurm.sh status    # exit 0 when it takes jobs
#   bash scripts/services/slurm.sh stop      # cancels live jobs first, then stops the daemons
#
# It writes /etc/slurm/slurm.conf (and slurmdbd.conf), and refuses to replace one it did not
# write (WFLP_SLURM_FORCE=1 to allow). Jobs run as the user who submits them.
#
# Environment (all optional):
#   WITH_DBD=1         also start slurmdbd + MariaDB (accounting: sacct)
#   MIN_JOB_AGE=300    seconds a finished job stays in `squeue -t all`
#   KILL_WAIT=10       seconds between SIGTERM and SIGKILL at the time limit
#   NODE_CPUS=$(nproc) CPUs the node offers; NODE_MEMORY=4000 MiB it offers
#   DEF_MEM_PER_CPU=1000  MiB a job gets per CPU when it asks for no memory
#   SCHED_PARAMS=batch_sched_delay=0  SchedulerParameters (Slurm's default delays starting
#                      batch jobs by up to 3 s; a test cluster wants them started at once)
#   EXTRA_CONF=...     extra slurm.conf lines
#
# Quirks of this Slurm (see plugins/wflp-slurm/README.md): memory limits are enforced by
# polling (JobAcctGatherParams=OverMemoryKill, every second), as there are no cgroups; a
# job killed so is FAILED with "Exceeded job memory limit" in its stderr. Time limits are
# checked about every 30 s, so a job with --time=1 gets SIGTERM 60-90 s after it started.
set -euo pipefail

D="${WFLP_SLURM_DIR:-/tmp/wflp-slurm}"      # what this script started, and logs
CONF=/etc/slurm/slurm.conf
MARK="# written by wflp scripts/services/slurm.sh"
WITH_DBD="${WITH_DBD:-0}"
MIN_JOB_AGE="${MIN_JOB_AGE:-300}"
KILL_WAIT="${KILL_WAIT:-10}"
NODE_CPUS="${NODE_CPUS:-$(nproc)}"
NODE_MEMORY="${NODE_MEMORY:-4000}"
DEF_MEM_PER_CPU="${DEF_MEM_PER_CPU:-1000}"
SCHED_PARAMS="${SCHED_PARAMS-batch_sched_delay=0}"
EXTRA_CONF="${EXTRA_CONF:-}"
PACKAGES=(slurmctld slurmd slurm-client munge)
DBD_PACKAGES=(slurmdbd mariadb-server)

# running, and not a zombie left by a kill (nothing may reap it in a container)
alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "${state}" && "${state}" != Z* ]]
}

pid_alive() {  # pid_alive PIDFILE
    [[ -s "$1" ]] && alive "$(cat "$1")"
}

wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.2 s
    local n=$(( $1 * 5 ))
    shift
    for _ in $(seq 1 "${n}"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

install() {
    local pkgs=("${PACKAGES[@]}")
    [[ "${WITH_DBD}" == 1 ]] && pkgs+=("${DBD_PACKAGES[@]}")
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
}

node_ready() {
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

start() {
    for prog in slurmctld slurmd sbatch munged; do
        if ! command -v "${prog}" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/${prog}" ]]; then
            echo "${prog} not found; run: bash $0 install (apt-get install ${PACKAGES[*]})" >&2
            exit 1
        fi
    done
    if [[ "${WITH_DBD}" == 1 && ! -x /usr/sbin/slurmdbd ]]; then
        echo "slurmdbd not found; run: WITH_DBD=1 bash $0 install" >&2
        exit 1
    fi
    mkdir -p "${D}" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    chmod 700 "${D}"
    local host
    host="$(hostname -s)"
    # the node's name must resolve to 127.0.0.1 (slurmd finds itself by it)
    if ! getent hosts "${host}" | grep -q '^127\.'; then
        echo "127.0.0.1 ${host}" >> /etc/hosts
    fi
    if [[ -f "${CONF}" ]] && ! head -n 1 "${CONF}" | grep -qF "${MARK}" \
            && [[ "${WFLP_SLURM_FORCE:-0}" != 1 ]]; then
        echo "${CONF} exists and was not written by this script; not replacing it" \
             "(WFLP_SLURM_FORCE=1 to allow)" >&2
        exit 1
    fi
    local acct='AccountingStorageType=accounting_storage/none'
    if [[ "${WITH_DBD}" == 1 ]]; then
        acct=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\nAccountingStoragePort=6819'
    fi
    cat > "${CONF}.new" <<CONF
${MARK}
ClusterName=wflptest
SlurmctldHost=${host}(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
${acct}
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
SchedulerParameters=${SCHED_PARAMS}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${DEF_MEM_PER_CPU}
ReturnToService=2
MinJobAge=${MIN_JOB_AGE}
KillWait=${KILL_WAIT}
MpiDefault=none
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${NODE_CPUS} RealMemory=${NODE_MEMORY} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
${EXTRA_CONF}
CONF
    mv "${CONF}.new" "${CONF}"

    # munge: the Debian package makes a key; make one if it is missing
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge
    chmod 400 /etc/munge/munge.key
    if ! pid_alive /run/munge/munged.pid; then
        runuser -u munge -- /usr/sbin/munged
        touch "${D}/started-munged"
    fi
    wait_for 10 sh -c 'munge -n | unmunge'

    if [[ "${WITH_DBD}" == 1 ]]; then
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld
        if ! mysqladmin ping >/dev/null 2>&1; then
            /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
                > /var/log/slurm/mariadb.log 2>&1 &
            touch "${D}/started-mariadb"
            wait_for 20 mysqladmin ping || { echo "MariaDB did not start" >&2; exit 1; }
        fi
        mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
                  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
        cat > /etc/slurm/slurmdbd.conf <<CONF
${MARK}
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
CommunicationParameters=NoInAddrAny
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
        chmod 600 /etc/slurm/slurmdbd.conf
        if ! pid_alive /run/slurmdbd.pid; then
            /usr/sbin/slurmdbd
        fi
        wait_for 20 sh -c "ss -ltn | grep -q '127.0.0.1:6819 '" \
            || { echo "slurmdbd did not start (see /var/log/slurm/slurmdbd.log)" >&2; exit 1; }
    fi

    if pid_alive /run/slurmctld.pid; then
        if ! scontrol reconfigure; then
            echo "Slurm runs with another configuration that needs a restart: bash $0 stop," \
                 "then start again" >&2
            exit 1
        fi
    else
        /usr/sbin/slurmctld
    fi
    pid_alive /run/slurmd.pid || /usr/sbin/slurmd
    if ! wait_for 30 node_ready; then
        echo "the Slurm node did not come up (see /var/log/slurm/slurm{ctld,d}.log):" >&2
        sinfo >&2 || true
        exit 1
    fi
    if [[ "${WITH_DBD}" == 1 ]]; then
        # the cluster registers itself with slurmdbd when slurmctld starts
        wait_for 20 sh -c 'sacct -n -X -S now >/dev/null' \
            || { echo "sacct does not answer (see /var/log/slurm/slurmdbd.log)" >&2; exit 1; }
    fi
    sinfo
    echo "Slurm is up on 127.0.0.1 (accounting: $([[ "${WITH_DBD}" == 1 ]] && echo sacct || echo none))"
}

status() {
    scontrol ping && node_ready
}

stop() {
    # live jobs first: otherwise their slurmstepd outlives slurmd and the job comes back
    # as a ghost RUNNING job at the next start
    if scontrol ping >/dev/null 2>&1; then
        local ids
        ids="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
        if [[ -n "${ids// }" ]]; then
            # shellcheck disable=SC2086
            scancel ${ids} || true
            wait_for 15 sh -c '[ -z "$(squeue -h -o %A)" ]' || true
        fi
    fi
    local pf pid
    for pf in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid; do
        if [[ -s "${pf}" ]]; then
            pid="$(cat "${pf}")"
            if kill "${pid}" 2>/dev/null; then
                echo "stopped $(basename "${pf}" .pid) (${pid})"
                wait_for 10 sh -c "! kill -0 ${pid}" || kill -9 "${pid}" 2>/dev/null || true
            fi
            rm -f "${pf}"
        fi
    done
    if [[ -f "${D}/started-mariadb" && -s /run/mysqld/mysqld.pid ]]; then
        pid="$(cat /run/mysqld/mysqld.pid)"
        kill "${pid}" 2>/dev/null && echo "stopped mariadb (${pid})"
        wait_for 20 sh -c "! kill -0 ${pid}" || true
        rm -f "${D}/started-mariadb"
    fi
    if [[ -f "${D}/started-munged" && -s /run/munge/munged.pid ]]; then
        pid="$(cat /run/munge/munged.pid)"
        kill "${pid}" 2>/dev/null && echo "stopped munged (${pid})"
        wait_for 10 sh -c "! kill -0 ${pid}" || true
        rm -f "${D}/started-munged"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
