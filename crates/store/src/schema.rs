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

diesel::joinable!(transactions -> persons (person_id));
diesel::allow_tables_to_appear_in_same_query!(persons, transactions, api_tokens);
