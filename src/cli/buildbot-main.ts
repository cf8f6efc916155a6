import { main } from './buildbot.js';

process.exitCode = await main(process.argv.slice(2));
