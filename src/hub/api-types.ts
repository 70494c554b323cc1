/** JSON exactly as the hub sends it. Only what hfget reads is typed; everything is checked at runtime. */

export interface ApiRevisionInfo {
  id?: string;
  sha?: string;
  private?: boolean;
  gated?: boolean | string;
}

export interface ApiLfsInfo {
  oid: string;
  size: number;
  pointerSize?: number;
}

export interface ApiTreeEntry {
  type: "file" | "directory" | "unknown";
  path: string;
  size?: number;
  oid?: string;
  lfs?: ApiLfsInfo;
  xetHash?: string;
}
