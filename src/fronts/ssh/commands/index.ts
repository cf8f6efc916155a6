import { buildCommand } from './build.js';
import type { Command } from './types.js';

const COMMANDS: readonly Command[] = [buildCommand];

export const findCommand = (name: string): Command | undefined => COMMANDS.find((c) => c.names.includes(name));
