DROP TABLE api_tokens;
DROP TABLE transactions;
DROP TABLE persons;
