/** Bad input from whoever called: the message says what was wrong and what is allowed. */
export class UserInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserInputError';
  }
}

/** Something the operator must fix in the setup (missing binary, token, invalid policy file). */
export class ConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigurationError';
  }
}

export class NotFoundError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A CLI invocation that is malformed (unknown flag, missing value); exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
