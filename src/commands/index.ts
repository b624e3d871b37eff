import type { CliCommand } from './types.js';
import { backupCommand } from './backup.js';
import { runGithubWebhook } from './run-github-webhook.js';
import { runManagerLoopCommand } from './run-manager-loop.js';
import { runTelegramBot } from './run-telegram-bot.js';
import { demoCommand } from './demo.js';

/** Non-tool CLI commands; append yours here. */
export const COMMANDS: CliCommand[] = [backupCommand, runGithubWebhook, runManagerLoopCommand, runTelegramBot, demoCommand];
