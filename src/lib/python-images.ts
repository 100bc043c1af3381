/**
 * The Python versions on offer by default and their images, as scripts/build-base-image.sh builds them: one Debian
 * suite per version (bookworm 3.11, trixie 3.13, forky 3.14). Python 3.12 is in no suite Debian's archive serves
 * (docs/python-apps.md, "Python versions"). Production replaces the table with official images
 * (TUSSILAGO_PYTHON_IMAGES).
 */
export const DEFAULT_PYTHON = "3.14";

export const DEFAULT_PYTHON_IMAGES: Readonly<Record<string, string>> = {
  "3.11": "localhost/tussilago-python:3.11",
  "3.13": "localhost/tussilago-python:3.13",
  "3.14": "localhost/tussilago-python:3.14",
};
