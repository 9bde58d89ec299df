# Installed by strata (module base).
export ACME_ENV_FILE=/etc/acme.env
