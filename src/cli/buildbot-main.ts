// The remote client loads only what it uses: the local build's modules (dockerode, yargs …)
// cost it most of its start-up time.
const argv = process.argv.slice(2);
const remote = argv.some((word) => word === '--server' || word.startsWith('--server='));
process.exitCode = remote
  ? await (await import('./remote.js')).remoteMain(argv, process.env)
  : await (await import('./buildbot.js')).main(argv);
