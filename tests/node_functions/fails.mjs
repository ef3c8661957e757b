// Throws: the gateway answers 502 and logs the error.
export const handler = async () => {
  throw new TypeError("the node function failed on purpose");
};
