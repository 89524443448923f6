// placeholder: the embedded task generator
int main(void) { return 0; }
