-- The metrics tables as first released (schema version 1, before schema_version existed),
-- copied from that release (columns wrapped): test_metrics upgrades a store made with them.
-- Never edit.
CREATE TABLE IF NOT EXISTS optiinfra.cost_lines (
    line_id String, customer_id LowCardinality(String), provider_name LowCardinality(String),
    billing_account_id String, invoice_id String, billed_cost Decimal(18, 6), effective_cost
    Decimal(18, 6), list_cost Decimal(18, 6), list_unit_price Decimal(18, 8), billing_currency
    LowCardinality(String), charge_period_start DateTime64(6, 'UTC'), charge_period_end
    DateTime64(6, 'UTC'), billing_period Date, charge_category LowCardinality(String),
    charge_description String, service_name LowCardinality(String), resource_id String,
    resource_name String, region_id LowCardinality(String), pricing_quantity Decimal(18, 6),
    pricing_unit LowCardinality(String), is_estimate Bool, run_id Int64, collected_at
    DateTime64(6, 'UTC'), is_deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(collected_at, is_deleted) ORDER BY (customer_id, provider_name, line_id);

CREATE TABLE IF NOT EXISTS optiinfra.account_snapshots (
    customer_id LowCardinality(String), provider_name LowCardinality(String), balance
    Decimal(18, 6), pending_charges Decimal(18, 6), last_payment_date Nullable(DateTime64(6,
    'UTC')), last_payment_amount Decimal(18, 6), run_id Int64, collected_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (customer_id, provider_name, collected_at);

CREATE TABLE IF NOT EXISTS optiinfra.ledger (
    line_id String, customer_id LowCardinality(String), provider_name LowCardinality(String),
    entry_id String, entry_date DateTime64(6, 'UTC'), entry_type LowCardinality(String),
    description String, amount Decimal(18, 6), balance Decimal(18, 6), run_id Int64,
    collected_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(collected_at) ORDER BY (customer_id, provider_name, line_id);

CREATE TABLE IF NOT EXISTS optiinfra.resources (
    customer_id LowCardinality(String), provider_name LowCardinality(String), resource_id
    String, resource_name String, resource_type LowCardinality(String), region_id
    LowCardinality(String), status LowCardinality(String), plan LowCardinality(String),
    vcpu_count Int32, ram_mb Int64, disk_gb Int64, created_at Nullable(DateTime64(6, 'UTC')),
    run_id Int64, collected_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(collected_at) ORDER BY (customer_id, provider_name, resource_id);

CREATE TABLE IF NOT EXISTS optiinfra.complete_invoices (
    customer_id LowCardinality(String), provider_name LowCardinality(String), invoice_id String,
    completed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(completed_at) ORDER BY (customer_id, provider_name, invoice_id);

