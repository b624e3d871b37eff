/** The webhook_deliveries source of GitHub deliveries (the ledger is keyed by source + delivery id). */
export const DELIVERY_SOURCE = 'github';
