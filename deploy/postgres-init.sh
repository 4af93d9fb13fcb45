#!/bin/sh
# First start of the postgres service only: the warehouse database beside Dagster's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE ${KINITRO_WAREHOUSE_DB:-kinitro}"
