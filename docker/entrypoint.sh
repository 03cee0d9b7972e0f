#!/bin/sh
# edgesplit image entrypoint: the first argument chooses what the container runs.
#
#   executor | cloud | orchestrator | allocator   python -m services.<role>, configured only by
#                                                 EDGESPLIT_<ROLE>_* environment variables
#   locust [LOCUST ARGS...]                       the load test (loadtest/locustfile.py)
#   --help                                        this text
#   anything else                                 run as a command (e.g. `edgesplit plan ...`)
#
# Inside a container a service must listen on every interface, so the role's HOST defaults to
# 0.0.0.0 here (the services themselves default to 127.0.0.1), and PORT to the image's default for
# the role (orchestrator 8080, the others 8000) unless the environment sets them.
set -eu

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

default_port() {
  case "$1" in
    orchestrator) echo 8080 ;;
    *) echo 8000 ;;
  esac
}

role="${1:---help}"
case "$role" in
  executor|cloud|orchestrator|allocator)
    shift
    prefix="EDGESPLIT_$(echo "$role" | tr '[:lower:]' '[:upper:]')"
    if [ "$#" -gt 0 ]; then
      echo "edgesplit-entrypoint: the $role role takes no arguments (got: $*);" \
        "configure it with ${prefix}_* environment variables" >&2
      exit 2
    fi
    host="" port=""
    eval "host=\${${prefix}_HOST:-0.0.0.0}"
    eval "port=\${${prefix}_PORT:-$(default_port "$role")}"
    export "${prefix}_HOST=$host" "${prefix}_PORT=$port"
    exec python -m "services.$role"
    ;;
  locust)
    shift
    exec locust -f "${EDGESPLIT_LOCUSTFILE:-/app/loadtest/locustfile.py}" "$@"
    ;;
  -h|--help|help)
    usage
    ;;
  *)
    exec "$@"
    ;;
esac
