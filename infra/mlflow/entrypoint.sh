#!/bin/sh
# Start the MLflow server: PostgreSQL backend store, artifacts proxied to object storage,
# MLflow's basic-auth app (users and permissions in their own PostgreSQL database).
# MLflow itself reads the admin password (MLFLOW_AUTH_ADMIN_PASSWORD), the session secret
# (MLFLOW_FLASK_SERVER_SECRET_KEY) and the allowed Host headers (MLFLOW_SERVER_ALLOWED_HOSTS).
# BACKEND_STORE_URI and AUTH_DATABASE_URI override the PostgreSQL databases (the tests use
# SQLite); SERVER_HOST, SERVER_PORT and SERVER_WORKERS the listener.
set -eu
: "${ARTIFACTS_DESTINATION:?set ARTIFACTS_DESTINATION, e.g. s3://smx-runs/mlflow-artifacts}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"
if [ -z "${BACKEND_STORE_URI:-}" ] || [ -z "${AUTH_DATABASE_URI:-}" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  db="postgresql+psycopg2://mlflow:${POSTGRES_PASSWORD}@${POSTGRES_HOST:-postgres}:5432"
fi
backend="${BACKEND_STORE_URI:-${db}/mlflow}"
auth_db="${AUTH_DATABASE_URI:-${db}/mlflow_auth}"
auth_ini="${HOME}/basic_auth.ini"
umask 077
cat > "${auth_ini}" <<INI
[mlflow]
default_permission = READ
database_uri = ${auth_db}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="${auth_ini}"
exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "${backend}" \
  --artifacts-destination "${ARTIFACTS_DESTINATION}" \
  --serve-artifacts \
  --host "${SERVER_HOST:-0.0.0.0}" \
  --port "${SERVER_PORT:-5000}" \
  --workers "${SERVER_WORKERS:-4}"
