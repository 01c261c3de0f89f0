/**
 * Faults injected into the real Kafka client (no mock broker): the stage's transactional producers'
 * commit fails before it reaches the broker (the transaction is still open and gets aborted), or after
 * the broker committed (the client only sees an error, as when the reply to EndTxn is lost).
 */
import type { Kafka } from 'kafkajs';

/** What to do with the n-th transactional commit (1-based): fail before or after it reaches the broker, or let it through. */
export type CommitFault = (commit: number) => 'before' | 'after' | null;

/** The real client, with every transactional producer's commit passed through `fault`. */
export function withCommitFaults(real: Kafka, fault: CommitFault): Kafka {
  let commits = 0;
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'producer') return Reflect.get(target, prop, receiver);
      return (cfg: Parameters<Kafka['producer']>[0]) => {
        const producer = target.producer(cfg);
        if (!cfg?.transactionalId) return producer;
        const transaction = producer.transaction.bind(producer);
        producer.transaction = async () => {
          const tx = await transaction();
          const commit = tx.commit.bind(tx);
          tx.commit = async () => {
            const what = fault(++commits);
            if (what === 'before') throw Object.assign(new Error('injected: connection closed before EndTxn'), { retriable: true });
            await commit();
            if (what === 'after') throw Object.assign(new Error('injected: reply to EndTxn lost'), { retriable: true });
          };
          return tx;
        };
        return producer;
      };
    },
  });
}
