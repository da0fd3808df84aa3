# ingressd:0.1.0 -- the controller image: Debian's nginx with lua-nginx-module, and ingressd.
#
#   docker build -t ingressd:0.1.0 .
#   kubectl apply -f manifests/deploy/
#
# It runs as uid 101 with only NET_BIND_SERVICE (see manifests/deploy/50-deployment.yaml).
# With allowPrivilegeEscalation: false (no_new_privs) a process keeps a file capability only
# when the process that exec'd it held the capability too, so every link of the chain
# tini -> python -> nginx carries cap_net_bind_service as a file capability.
FROM debian:12-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        nginx libnginx-mod-http-lua lua-resty-core lua-cjson \
        libnginx-mod-http-headers-more-filter libnginx-mod-stream libnginx-mod-stream-js \
        libnginx-mod-http-modsecurity modsecurity-crs \
        python3 python3-venv ca-certificates tini libcap2-bin \
    && setcap cap_net_bind_service=+ep /usr/sbin/nginx \
    && setcap cap_net_bind_service=+ep "$(readlink -f /usr/bin/python3)" \
    && setcap cap_net_bind_service=+ep /usr/bin/tini \
    && apt-get purge -y libcap2-bin \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default

# uid/gid 101 (ingress-nginx's); the build fails if a package already took them.
RUN groupadd --system --gid 101 ingressd \
    && useradd --system --uid 101 --gid 101 --home-dir /var/lib/ingressd \
        --shell /usr/sbin/nologin ingressd \
    && install -d -o 101 -g 101 -m 0755 /var/lib/ingressd

# A regular install: the template, the Lua code and the demo's manifests go to
# /opt/venv/share/ingressd (pyproject's data-files), where the package looks for them
# (ingressd.nginx.rendering.resource_root); everything stays root-owned and read-only.
COPY pyproject.toml /tmp/ingressd/
COPY ingressd /tmp/ingressd/ingressd
COPY templates /tmp/ingressd/templates
COPY lua /tmp/ingressd/lua
COPY manifests/demo /tmp/ingressd/manifests/demo
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir /tmp/ingressd \
    && rm -rf /tmp/ingressd \
    && /opt/venv/bin/ingressd --version \
    && test -f /opt/venv/share/ingressd/templates/nginx.conf.j2

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/ingressd

USER 101:101
WORKDIR /var/lib/ingressd
EXPOSE 80 443 10254

# tini reaps what nginx leaves behind and forwards SIGTERM: ingressd then quits nginx
# gracefully (SIGQUIT) and releases the leader Lease.
ENTRYPOINT ["/usr/bin/tini", "--", "ingressd", "run"]
CMD ["--work-dir=/var/lib/ingressd"]
