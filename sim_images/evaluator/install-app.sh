#!/bin/sh
# Installs the code copied to APP_DIR into the image's /opt/venv: shared by the evaluator and the
# procthor images (sim_images/evaluator/build.sh puts it in both build contexts).
#   install-app.sh APP_DIR
# A .pth file instead of a wheel: the package is imported from APP_DIR, the path the launching
# code origin names, and `kinitro` works as a command. Dagster's home gets deploy/'s instance and
# workspace files.
set -eux
app_dir="$1"
site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$app_dir" > "$site/kinitro.pth"
printf '#!/opt/venv/bin/python\nimport sys\nfrom kinitro_dagster.cli import main\nsys.exit(main())\n' \
    > /opt/venv/bin/kinitro
chmod +x /opt/venv/bin/kinitro
mkdir -p /opt/dagster/dagster_home /var/lib/kinitro
cp "$app_dir/deploy/dagster.yaml" "$app_dir/deploy/workspace.yaml" /opt/dagster/dagster_home/
