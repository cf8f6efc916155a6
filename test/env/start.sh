# Sourced by `npm test` and `npm run bench` from the project root: installs what is missing,
# compiles, and brings up the real components on loopback (test/env/up.sh); the caller's shell
# tears them down on exit, whatever the outcome.
bash test/env/npm-deps.sh
npm run --silent build
export BUILDBOT_TEST_DIR=${BUILDBOT_TEST_DIR:-$(mktemp -d /tmp/buildbot-env.XXXXXX)}
trap 'bash test/env/down.sh' EXIT
bash test/env/up.sh
