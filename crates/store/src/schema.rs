//! The one diesel schema shared by both engines: portable column types only
//! (`BigInt` keys, `Timestamp` in UTC, text instead of enums, JSON as text).

diesel::table! {
    persons (id) {
        id -> BigInt,
        email -> Nullable<Text>,
        first_name -> Nullable<Text>,
        infix -> Nullable<Text>,
        last_name -> Nullable<Text>,
        street -> Nullable<Text>,
        house_number -> Nullable<Text>,
        postal_code -> Nullable<Text>,
        city -> Nullable<Text>,
        country -> Nullable<Text>,
        phone -> Nullable<Text>,
        mobile -> Nullable<Text>,
        birth_date -> Nullable<Date>,
        iban -> Nullable<Text>,
        bsn -> Nullable<Text>,
        deceased -> Bool,
        bouncer -> Bool,
        bouncer_at -> Nullable<Timestamp>,
        bouncer_reason -> Nullable<Text>,
        is_test_person -> Bool,
        anonymized_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        full_unsubscribed_at -> Nullable<Timestamp>,
        soft_bounces -> Integer,
    }
}

diesel::table! {
    transactions (id) {
        id -> BigInt,
        person_id -> BigInt,
        kind -> Text,
        amount_cents -> BigInt,
        currency -> Text,
        occurred_at -> Timestamp,
        description -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        role -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    opt_in_types (id) {
        id -> BigInt,
        kind -> Text,
        name -> Text,
        description -> Text,
        active -> Bool,
        soft_query_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    consent_records (id) {
        id -> BigInt,
        person_id -> BigInt,
        opt_in_type_id -> BigInt,
        opt_in -> Bool,
        channel -> Text,
        description -> Text,
        contact_moment_id -> Nullable<BigInt>,
        recorded_by -> Text,
        recorded_at -> Timestamp,
        captured_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    consent_current (person_id, opt_in_type_id) {
        person_id -> BigInt,
        opt_in_type_id -> BigInt,
        opt_in -> Bool,
        record_id -> BigInt,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    contact_moments (id) {
        id -> BigInt,
        person_id -> BigInt,
        channel -> Text,
        step_id -> Nullable<BigInt>,
        is_test -> Bool,
        occurred_at -> Timestamp,
        opened_at -> Nullable<Timestamp>,
        clicked_at -> Nullable<Timestamp>,
        mail_job_id -> Nullable<BigInt>,
        message_id -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        bounced_at -> Nullable<Timestamp>,
        bounce_reason -> Nullable<Text>,
        open_count -> Integer,
        click_count -> Integer,
    }
}

diesel::table! {
    saved_queries (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        conditions -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    saved_query_references (query_id, referenced_id) {
        query_id -> BigInt,
        referenced_id -> BigInt,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    person_profiles (person_id) {
        person_id -> BigInt,
        recency_days -> Nullable<Integer>,
        frequency -> Integer,
        monetary_cents -> BigInt,
        r_score -> Integer,
        f_score -> Integer,
        m_score -> Integer,
        rfm_score -> Integer,
        opens_90d -> Integer,
        clicks_90d -> Integer,
        calculated_at -> Timestamp,
    }
}

diesel::table! {
    person_profile_totals (person_id, kind) {
        person_id -> BigInt,
        kind -> Text,
        count -> BigInt,
        sum_cents -> BigInt,
    }
}

diesel::table! {
    tasks (id) {
        id -> BigInt,
        kind -> Text,
        state -> Text,
        progress -> BigInt,
        total -> BigInt,
        message -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        run_at -> Timestamp,
        attempts -> Integer,
        max_attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        payload -> Text,
        unique_key -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        person_id -> Nullable<BigInt>,
        detail -> Text,
    }
}

diesel::table! {
    retention_rules (id) {
        id -> BigInt,
        name -> Text,
        query_id -> BigInt,
        action -> Text,
        schedule -> Text,
        active -> Bool,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    retention_runs (id) {
        id -> BigInt,
        rule_id -> BigInt,
        task_id -> Nullable<BigInt>,
        dry_run -> Bool,
        matched -> BigInt,
        anonymized -> BigInt,
        actor -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    campaigns (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    campaign_steps (id) {
        id -> BigInt,
        campaign_id -> BigInt,
        name -> Text,
        from_name -> Text,
        from_email -> Nullable<Text>,
        reply_to -> Nullable<Text>,
        subject -> Text,
        preheader -> Text,
        html -> Text,
        text_body -> Nullable<Text>,
        blocks -> Text,
        query_id -> Nullable<BigInt>,
        opt_in_type_id -> Nullable<BigInt>,
        send_kind -> Text,
        track_clicks -> Bool,
        track_opens -> Bool,
        blocked_since -> Nullable<Timestamp>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    mail_jobs (id) {
        id -> BigInt,
        step_id -> BigInt,
        status -> Text,
        scheduled_at -> Timestamp,
        prepare_at -> Timestamp,
        include_previous_recipients -> Bool,
        content -> Nullable<Text>,
        recipients -> BigInt,
        skipped_previous -> BigInt,
        sent -> BigInt,
        failed -> BigInt,
        skipped -> BigInt,
        message -> Text,
        task_id -> Nullable<BigInt>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        prepared_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        bounced -> BigInt,
        in_doubt -> BigInt,
        paused_at -> Nullable<Timestamp>,
        pause_reason -> Nullable<Text>,
    }
}

diesel::table! {
    mail_job_recipients (mail_job_id, person_id) {
        mail_job_id -> BigInt,
        person_id -> BigInt,
        state -> Text,
        blocks -> BigInt,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        in_doubt -> Bool,
        contact_moment_id -> Nullable<BigInt>,
        reply_phase -> Nullable<Text>,
        reply_code -> Nullable<Integer>,
        reply_enhanced -> Nullable<Text>,
        reply_text -> Nullable<Text>,
    }
}

diesel::table! {
    delivery_pace (name) {
        name -> Text,
        next_at_us -> BigInt,
    }
}

diesel::table! {
    secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    imports (id) {
        id -> BigInt,
        task_id -> Nullable<BigInt>,
        file -> Text,
        mapping -> Text,
        mode -> Text,
        status -> Text,
        rows_read -> BigInt,
        created -> BigInt,
        updated -> BigInt,
        unchanged -> BigInt,
        skipped -> BigInt,
        failed -> BigInt,
        message -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_errors (id) {
        id -> BigInt,
        import_id -> BigInt,
        row_number -> BigInt,
        column_name -> Text,
        reason -> Text,
    }
}

diesel::table! {
    notices (id) {
        id -> BigInt,
        subject -> Text,
        class -> Text,
        event_key -> Text,
        source -> Text,
        person_id -> Nullable<BigInt>,
        contact_moment_id -> Nullable<BigInt>,
        status -> Nullable<Text>,
        diagnostic -> Text,
        outcome -> Text,
        recorded_by -> Text,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    unreadable_reports (id) {
        id -> BigInt,
        received_at -> Timestamp,
        content_type -> Text,
        problem -> Text,
        body -> Binary,
        reported_by -> Text,
    }
}

diesel::joinable!(transactions -> persons (person_id));
diesel::joinable!(campaign_steps -> campaigns (campaign_id));
diesel::joinable!(mail_jobs -> campaign_steps (step_id));
diesel::joinable!(mail_job_recipients -> mail_jobs (mail_job_id));
diesel::joinable!(mail_job_recipients -> persons (person_id));
diesel::joinable!(consent_records -> persons (person_id));
diesel::joinable!(consent_records -> opt_in_types (opt_in_type_id));
diesel::joinable!(consent_current -> persons (person_id));
diesel::joinable!(consent_current -> opt_in_types (opt_in_type_id));
diesel::joinable!(contact_moments -> persons (person_id));
diesel::joinable!(person_profiles -> persons (person_id));
diesel::joinable!(notices -> persons (person_id));
diesel::joinable!(notices -> contact_moments (contact_moment_id));
diesel::allow_tables_to_appear_in_same_query!(
    persons,
    delivery_pace,
    transactions,
    api_tokens,
    opt_in_types,
    consent_records,
    consent_current,
    contact_moments,
    saved_queries,
    saved_query_references,
    settings,
    person_profiles,
    person_profile_totals,
    tasks,
    audit_log,
    retention_rules,
    retention_runs,
    campaigns,
    campaign_steps,
    mail_jobs,
    mail_job_recipients,
    secrets,
    imports,
    import_errors,
    notices,
    unreadable_reports,
);
