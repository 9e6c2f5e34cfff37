#!/usr/bin/env bash
# Makes sure what the tests need is installed and running on this machine:
# PostgreSQL on 127.0.0.1:5432 (a role "postgres" that may connect without a password from
# loopback), NATS with JetStream on 127.0.0.1:4222, and Debian's Chromium + ChromeDriver for the
# browser tests. Installs Debian packages when missing,
# starts stopped servers, and waits until they answer. Safe to run again.
set -euo pipefail

log() { printf '[ensure-services] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 name=$2
    for _ in $(seq 1 60); do
        if port_open "$port"; then return 0; fi
        sleep 0.5
    done
    log "$name did not come up on 127.0.0.1:$port"
    return 1
}

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
        return 0
    fi
    if ! command -v pg_ctlcluster >/dev/null; then
        log "installing PostgreSQL"
        apt_install postgresql
        # Test machine only: let local connections in without a password.
        local hba
        hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
        as_root sed -i -E 's/^(local|host)(\s+all\s+all\s+.*\s)(peer|md5|scram-sha-256)$/\1\2trust/' "$hba"
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for_port 5432 PostgreSQL
    for _ in $(seq 1 60); do
        if pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
        sleep 0.5
    done
    log "PostgreSQL is not ready"
    return 1
}

ensure_nats() {
    if port_open 4222; then
        return 0
    fi
    if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
        log "installing nats-server"
        apt_install nats-server
    fi
    local bin
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    log "starting NATS with JetStream"
    as_root mkdir -p /var/lib/nats-server
    as_root start-stop-daemon --start --oknodo --background --exec "$bin" -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_for_port 4222 NATS
}

ensure_browser() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        return 0
    fi
    log "installing Chromium and ChromeDriver (browser tests)"
    apt_install chromium chromium-driver
}

ensure_nginx() {
    if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
        return 0
    fi
    log "installing nginx (the local distributed mode's load balancer)"
    apt_install nginx
}

ensure_openssl() {
    if command -v openssl >/dev/null; then
        return 0
    fi
    log "installing openssl (certificates for the TLS test mail server)"
    apt_install openssl
}

ensure_postgres
ensure_nats
ensure_browser
ensure_nginx
ensure_openssl
log "PostgreSQL, NATS (JetStream), Chromium, nginx and openssl are ready"
