#!/usr/bin/env bash
# CI: RabbitMQ for the broker tests (docs/brokers.md). Starts the machine's RabbitMQ if it does not
# answer, then makes the vhost given (default /ci) afresh, so that no queue of an earlier run is
# left in it, with the guest user's permissions. Quiet unless something fails.
#   .ci/rabbitmq.sh [vhost]   then   CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/<vhost>
set -euo pipefail

VHOST="${1:-/ci}"

answers() { rabbitmqctl -q status >/dev/null 2>&1; }

if ! answers; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1
  for _ in $(seq 1 60); do answers && break; sleep 1; done
  answers || { echo "RabbitMQ did not start" >&2; exit 1; }
fi
rabbitmqctl -q await_startup >/dev/null

if rabbitmqctl -q list_vhosts name | grep -qxF -- "$VHOST"; then
  rabbitmqctl -q delete_vhost "$VHOST" >/dev/null
fi
rabbitmqctl -q add_vhost "$VHOST" >/dev/null
rabbitmqctl -q set_permissions -p "$VHOST" guest ".*" ".*" ".*" >/dev/null
