import { DRILL_KEY } from '../api/drill-key.js';

/** Kept apart from drill.ts so that printing usage loads no Kubernetes client. */
export const DRILL_USAGE = `  switchyard drill --backend NS/NAME --gateway URL (--key-secret NS/NAME | --key-file PATH)
                   [--priority 0] [--requests 5] [--model NAME] [--from http://HOST:9090]
                   [--kubeconfig PATH] [-o table|json]
      Send --requests chat completions to the Gateway (URL: the OpenAI base URL its route serves,
      e.g. http://gw.example.com/v1) with a drill header signed by the Backend's drill key (the
      Secret its spec.drill.keySecretRef names, key "${DRILL_KEY}"; read from the API server with
      --key-secret, or from a file). The AI extension fails the attempts of --priority, and of the
      priorities before it, without calling their providers; the next priority really answers
      (max_tokens 1). Prints per request who answered and the latency
      failing over added, then a summary; exits 1 when a request did not fail over.
      --from (a serve or controller's metrics port) or the API server (with --key-secret) is asked
      first whether the Backend exists and has a priority after --priority.
`;
