#!/bin/sh
# Entry point of the container image (tested outside Docker by tests/integration/test_deploy.py).
#
#   (no arguments)  serve on every interface of the container; pending migrations are applied
#                   first unless DICOMWEB_MIGRATE_ON_START=false (the Kubernetes manifests leave
#                   them to a Job and the pods refuse to start on an old schema)
#   anything else   `dicomweb-server` with those arguments: `db upgrade`, `check --repair`, ...
set -eu

if [ "$#" -gt 0 ]; then
    exec dicomweb-server "$@"
fi
exec dicomweb-server serve --host "${DICOMWEB_HOST:-0.0.0.0}"
