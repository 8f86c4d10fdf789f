#!/bin/sh
# Helper for scenarios/nginx-blue-green.toml: a local nginx in front of two `gapless serve`
# backends, blue (answers v1) and green (answers v2). Nothing outside $BG_DIR is touched: the
# nginx config, pid file, logs and temp files all live there, and nginx runs as an ordinary
# process on loopback ports.
#
# Usage (from the repository root):
#   sh scenarios/nginx-blue-green.sh up              start blue, green and nginx (routing to blue)
#   sh scenarios/nginx-blue-green.sh switch green    point nginx at green: rewrite, test, reload
#   sh scenarios/nginx-blue-green.sh down            stop nginx and both backends
#
# Environment (defaults in brackets):
#   BG_DIR      working directory                    [${TMPDIR:-/tmp}/gapless-nginx-blue-green]
#   BG_PORT     nginx listens on 127.0.0.1:BG_PORT   [8080]
#   BLUE_PORT   blue backend (v1)                    [8081]
#   GREEN_PORT  green backend (v2)                   [8082]
#   GAPLESS     the gapless binary                   [gapless]
#   NGINX_BIN   the nginx binary                     [nginx, else /usr/sbin/nginx]
# (Not NGINX: nginx itself reads that variable, for sockets inherited in a binary upgrade.)
set -eu

BG_DIR=${BG_DIR:-${TMPDIR:-/tmp}/gapless-nginx-blue-green}
BG_PORT=${BG_PORT:-8080}
BLUE_PORT=${BLUE_PORT:-8081}
GREEN_PORT=${GREEN_PORT:-8082}
GAPLESS=${GAPLESS:-gapless}
NGINX_BIN=${NGINX_BIN:-nginx}
if [ "$NGINX_BIN" = nginx ] && ! command -v nginx >/dev/null 2>&1 && [ -x /usr/sbin/nginx ]; then
  NGINX_BIN=/usr/sbin/nginx
fi
# nginx takes a set NGINX for inherited sockets: it would then not daemonize.
unset NGINX

die() {
  echo "nginx-blue-green: $*" >&2
  exit 1
}

# nginx with this directory's config; -e sends its early messages to our log, not the terminal.
ngx() {
  "$NGINX_BIN" -p "$BG_DIR" -c "$BG_DIR/nginx.conf" -e "$BG_DIR/error.log" "$@"
}

# True when URL answers 200 (from version $2, when given); gapless itself is the probe.
probe() {
  if [ -n "$2" ]; then
    "$GAPLESS" run "$1" -q 20 -d 200ms --slot 100ms -c 1 --quiet \
      --version-header x-version --expect-version "$2"
  else
    "$GAPLESS" run "$1" -q 20 -d 200ms --slot 100ms -c 1 --quiet
  fi >/dev/null 2>&1
}

# Waits up to 5 s for URL to answer (from version $2, when given).
wait_ready() {
  tries=0
  until probe "$1" "${2:-}"; do
    tries=$((tries + 1))
    [ "$tries" -lt 25 ] || die "$1 did not answer ${2:-} within 5s (logs in $BG_DIR)"
    sleep 0.2
  done
}

# Writes the route (an include of the location block) atomically.
route() {
  echo "proxy_pass http://$1;" >"$BG_DIR/route.conf.new"
  mv "$BG_DIR/route.conf.new" "$BG_DIR/route.conf"
}

start_backend() { # name label port
  "$GAPLESS" serve --listen "127.0.0.1:$3" --version "$2" >"$BG_DIR/$1.log" 2>&1 &
  echo $! >"$BG_DIR/$1.pid"
}

stop_pidfile() {
  if [ -f "$1" ]; then
    kill "$(cat "$1")" 2>/dev/null || true
    rm -f "$1"
  fi
}

up() {
  mkdir -p "$BG_DIR/temp"
  [ ! -f "$BG_DIR/nginx.pid" ] || die "already up ($BG_DIR/nginx.pid exists): run down first"
  start_backend blue v1 "$BLUE_PORT"
  start_backend green v2 "$GREEN_PORT"
  wait_ready "http://127.0.0.1:$BLUE_PORT/"
  wait_ready "http://127.0.0.1:$GREEN_PORT/"
  cat >"$BG_DIR/nginx.conf" <<EOF
# Written by scenarios/nginx-blue-green.sh.
worker_processes 1;
pid $BG_DIR/nginx.pid;
error_log $BG_DIR/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $BG_DIR/temp/body;
    proxy_temp_path $BG_DIR/temp/proxy;
    fastcgi_temp_path $BG_DIR/temp/fastcgi;
    uwsgi_temp_path $BG_DIR/temp/uwsgi;
    scgi_temp_path $BG_DIR/temp/scgi;
    # Keep-alive to the upstreams, as an Ingress controller does.
    upstream blue { server 127.0.0.1:$BLUE_PORT; keepalive 16; }
    upstream green { server 127.0.0.1:$GREEN_PORT; keepalive 16; }
    server {
        listen 127.0.0.1:$BG_PORT;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            include $BG_DIR/route.conf;
        }
    }
}
EOF
  route blue
  ngx -q -t
  ngx
  wait_ready "http://127.0.0.1:$BG_PORT/" v1
  echo "nginx on http://127.0.0.1:$BG_PORT/ routes to blue (v1); files in $BG_DIR"
}

switch() {
  case "${1:-}" in
    blue | green) ;;
    *) die "switch needs blue or green" ;;
  esac
  [ -f "$BG_DIR/nginx.pid" ] || die "not up: run up first"
  route "$1"
  ngx -q -t
  ngx -s reload
  echo "nginx reloaded: routes to $1"
}

down() {
  if [ -f "$BG_DIR/nginx.pid" ]; then
    ngx -s quit || true
    tries=0
    while [ -f "$BG_DIR/nginx.pid" ] && [ "$tries" -lt 50 ]; do
      sleep 0.1
      tries=$((tries + 1))
    done
  fi
  stop_pidfile "$BG_DIR/blue.pid"
  stop_pidfile "$BG_DIR/green.pid"
  echo "stopped; logs in $BG_DIR"
}

case "${1:-}" in
  up) up ;;
  switch) switch "${2:-}" ;;
  down) down ;;
  *)
    echo "usage: $0 up | switch blue|green | down" >&2
    exit 2
    ;;
esac
