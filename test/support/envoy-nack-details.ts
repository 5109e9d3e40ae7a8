/**
 * Envoy 1.40's error_detail for rejected resources, captured from the real Envoy. The e2e tests
 * that provoke them (test/e2e/resource-quarantine.test.ts, test/e2e/nack.test.ts) check the real
 * Envoy still says exactly this, so the unit tests that read them stay true to it.
 */
export const CDS_DETAIL = "Error adding/updating cluster(s) backend/ai/beta: cluster manager: cluster provided LB specified but cluster 'backend/ai/beta' did not provide one. Check cluster documentation.";
export const SDS_DETAIL = 'Failed to load certificate chain from <inline>, only RSA certificates with 2048-bit or larger keys are supported';
export const LDS_DETAIL = "Error adding/updating listener(s) ai/ai-gateway/33573: cannot bind '127.0.0.1:33573': Address already in use\n";

/** Envoy 1.40's NACK of a Secret that fails its schema (captured with a stand-in key): the whole resource is dumped. */
export const SDS_SCHEMA_DETAIL = 'goo.gle/debugproto   \nname: "certificate/ai/tls"\ntls_certificate {\n  certificate_chain {\n  }\n  private_key {\n    inline_string: "-----BEGIN PRIVATE KEY-----\\nSECRETKEYMATERIAL\\n-----END PRIVATE KEY-----\\n"\n  }\n}\n: Proto constraint validation failed (SecretValidationError.TlsCertificate: embedded message failed validation | caused by TlsCertificateValidationError.CertificateChain: embedded message failed validation | caused by field: "specifier", reason: is required)';
