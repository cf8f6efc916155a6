import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errors, isBuildError } from '../../errors.js';
import { shellSplit } from '../../request/shell-split.js';
import type { Step } from '../context.js';

const BUILDER_LINE = /^#\s*build_inside_docker_image\s*=\s*(\S+)\s*$/m;
const TEST_LINE = /^#\s*test_in_container_entrypoint\s*=(.*)$/m;
const FROM_LINE = /^\s*FROM\s+(?:--\S+\s+)*(\S+)/gim;

/** Reads what the repository says about its own build, and writes VERSION for it. */
export const metadataStep: Step = {
  name: 'metadata',
  describe: () => 'VERSION, build.sh and Dockerfile',
  async run(ctx) {
    const dir = ctx.checkoutDir!;
    const version = ctx.request.tags[0];
    await writeFile(path.join(dir, 'VERSION'), `${version}\n`);

    const dockerfile = await readFile(path.join(dir, 'Dockerfile'), 'utf8').catch(() => undefined);
    if (dockerfile === undefined) throw errors.missingDockerfile(ctx.commit!.slice(0, 12));
    const buildScript = await readFile(path.join(dir, 'build.sh'), 'utf8').catch(() => undefined);
    const builderImage = buildScript === undefined ? undefined : BUILDER_LINE.exec(buildScript)?.[1];
    if (buildScript !== undefined && !builderImage) throw errors.buildScriptWithoutImage();

    const testLine = TEST_LINE.exec(dockerfile)?.[1].trim();
    let testEntrypoint: string[] | undefined;
    if (testLine !== undefined) {
      try {
        testEntrypoint = shellSplit(testLine, '#test_in_container_entrypoint');
      } catch (err) {
        throw isBuildError(err) ? errors.badTestEntrypoint(err.message) : err;
      }
      if (testEntrypoint.length === 0) throw errors.badTestEntrypoint('it names no command');
    }
    const imageFrom = [...dockerfile.matchAll(FROM_LINE)].at(-1)?.[1];
    ctx.metadata = { version, builderImage, testEntrypoint, imageFrom };
    ctx.out.line(`VERSION ${version}; ${builderImage ? `build.sh runs in ${builderImage}` : 'no build.sh'}; ${testEntrypoint ? 'in-image test' : 'no in-image test'}`);
  },
};
