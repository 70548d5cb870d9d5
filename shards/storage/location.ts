/** What kind of place a location string names: every command reads and writes through these two questions. */

/** A URL of any scheme (`s3://`, `http(s)://`, `file://`), as opposed to a plain local path. */
export function isUrl(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location);
}

/** A location reached over the network (`s3://`, `http(s)://`): a URL that is not `file://`. */
export function isRemote(location: string): boolean {
  return isUrl(location) && !/^file:\/\//i.test(location);
}
