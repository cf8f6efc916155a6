# The buildbot server: docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#   -v /data/buildbot-work:/buildbot-work -e SSH_PUBKEY_IN_INITIATE_BUILDS="ssh-ed25519 …" -p 22:22 IMAGE
# BASE_IMAGE must have Node.js 20.19+ and npm; git, openssh-client and mercurial are added if missing.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
# ssh2's native AES-GCM addon is compiled here (package.json's allowScripts lets only ssh2 run its
# install script); without it the server spends about half again as much CPU on streaming output.
# The compilers stay in this stage.
RUN if ! (command -v python3 && command -v make && command -v g++) >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
# npm ci runs ssh2's install script and then `prepare`, which compiles src/. The addon is built
# against the headers that come with Node.js when the base has them (the official images do),
# instead of downloading them.
RUN prefix=$(dirname "$(dirname "$(command -v node)")"); \
    if [ -f "$prefix/include/node/node.h" ]; then export npm_config_nodedir="$prefix"; fi; \
    npm ci --foreground-scripts --no-audit --no-fund && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${BASE_IMAGE}
RUN if ! (command -v git && command -v ssh && command -v hg) >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends git openssh-client mercurial ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /opt/buildbot
COPY package.json ./
COPY bin ./bin
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
RUN ln -s /opt/buildbot/bin/buildbot.sh /usr/local/bin/buildbot.sh \
 && ln -s /opt/buildbot/bin/buildbot-server /usr/local/bin/buildbot-server
ENV BUILDBOT_LISTEN=0.0.0.0:22 BUILDBOT_HTTP_LISTEN=0.0.0.0:8080 BUILDBOT_WORK_DIR=/buildbot-work NODE_ENV=production
EXPOSE 22 8080
VOLUME /buildbot-work
ENTRYPOINT ["buildbot-server"]
