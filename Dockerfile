# The buildbot server: docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#   -v /data/buildbot-work:/buildbot-work -e SSH_PUBKEY_IN_INITIATE_BUILDS="ssh-ed25519 …" -p 22:22 IMAGE
# BASE_IMAGE must have Node.js 20.19+ and npm; git, openssh-client and mercurial are added if missing.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Dependencies' install scripts are not needed: ssh2 runs without its optional native addon.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

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
ENV BUILDBOT_LISTEN=0.0.0.0:22 BUILDBOT_WORK_DIR=/buildbot-work NODE_ENV=production
EXPOSE 22
VOLUME /buildbot-work
ENTRYPOINT ["buildbot-server"]
